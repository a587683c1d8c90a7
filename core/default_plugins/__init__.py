"""Default features of tl, written as ordinary plugins."""
