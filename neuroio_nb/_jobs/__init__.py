"""The jobs (layer 3): validate, plan, apply, undo and resume, CSV. Private: the public names are in ``neuroio_nb``."""
