"""The built-in TIMIT-format corpus: a lexicon, a source-filter synthesiser and the generator."""
