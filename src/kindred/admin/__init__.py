"""Administration and moderation routes (`/api/v1/admin`)."""
