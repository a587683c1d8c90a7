"""Sentiment analysis task for tl: binary (negative/positive) or with a neutral class."""
