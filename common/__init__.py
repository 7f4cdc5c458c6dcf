"""Pieces every package may use: the lowest layer of the project (it imports no other package of it)."""
