"""Language resources: lexicon, lang directory and n-gram language models."""
