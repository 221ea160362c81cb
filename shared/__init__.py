"""The common library of the exchange: contracts, identity, persistence and messaging helpers.

Services import from here and never from each other.
"""
