"""Speech data: features and their cache, prepared corpora, batching, augmentation."""
