"""The step counts `voice add` uses unless told otherwise (kept apart from the training code so that the CLI
can show them without importing torch). How they were chosen: docs/results.md, "A voice from a folder"."""

DECODER_STEPS = 1000       # one-step decoder fine-tuning steps (about a minute on a 2-core CPU)
VOCODER_STEPS = 300        # hn vocoder fine-tuning steps (0: the model keeps the shared hn)
