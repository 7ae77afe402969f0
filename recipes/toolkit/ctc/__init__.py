"""CTC recognition: the Lightning module, decoding, entry-point steps, transcription."""
