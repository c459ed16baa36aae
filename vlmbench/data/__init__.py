"""Where the images and reference captions come from, and the checks run on them before any model loads."""
