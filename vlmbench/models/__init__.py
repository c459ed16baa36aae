"""Loading a model and its processor, and what the model's end tokens are."""
