"""Matches: made by a mutual like, listed by newest activity, ended by unmatching."""
