"""The embedded default corpus: English speech synthesized offline with eSpeak NG."""
