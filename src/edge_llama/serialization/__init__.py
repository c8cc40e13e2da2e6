"""On-disk forms of edge models: `model.data`, graphs and encodings."""
