"""Profile photos: upload, reorder, delete, and signed media URLs."""
