"""Models: the MLP backbone and the ContinualModule every method subclasses."""
