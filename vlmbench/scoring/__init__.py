"""Caption quality: CIDEr-D through pycocoevalcap, PTB tokenization, intervals, degenerate captions, drift."""
