"""Chat: messages between the two people of a live match, read receipts, and their events."""
