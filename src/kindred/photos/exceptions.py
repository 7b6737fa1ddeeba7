"""Photo and media failures, each with its stable contract code."""

from __future__ import annotations

from kindred.kit.errors import Conflict, Forbidden, NotFound, PayloadTooLarge, UnsupportedMediaType, ValidationFailed


class FileTooLarge(PayloadTooLarge):
    code, message = "file_too_large", "The file is larger than 10 MB."


class UnsupportedImageType(UnsupportedMediaType):
    code, message = "unsupported_media_type", "Upload a JPEG, PNG or WebP image."


class ImageInvalid(ValidationFailed):
    code, message = "image_invalid", "The image could not be read, or has more than 40 megapixels."


class PhotoLimitReached(Conflict):
    code, message = "photo_limit_reached", "You already have the maximum of 6 photos."


class PhotoNotFound(NotFound):
    code, message = "photo_not_found", "Photo not found."


class PhotoOrderInvalid(ValidationFailed):
    code, message = "validation_error", "photo_ids must list each of your photos exactly once."

    def __init__(self) -> None:
        super().__init__(details={"fields": [{"loc": ["body", "photo_ids"], "msg": self.message}]})


class MediaSignatureInvalid(Forbidden):
    code, message = "media_signature_invalid", "This media link is invalid or has expired."


class MediaNotFound(NotFound):
    code, message = "not_found", "Not found."
