"""The three services of the exchange. They never import each other; shared code is in ``shared``."""
