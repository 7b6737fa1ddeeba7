"""`/api/v1/plans`: what each tier costs and allows; public, so a paywall can show it before sign-up."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.status import HTTP_304_NOT_MODIFIED

from kindred.billing.plans import MAX_AGE, PlanCatalogue, PlanRead

router = APIRouter(tags=["billing"])


@router.get(
    "/plans",
    response_model=list[PlanRead],
    responses={304: {"description": "Not modified: the `If-None-Match` ETag is still current"}},
)
async def list_plans(request: Request) -> Response:
    catalogue: PlanCatalogue = request.app.state.plans
    headers = {"Cache-Control": f"public, max-age={MAX_AGE}", "ETag": catalogue.etag}
    if catalogue.matches(request.headers.get("if-none-match")):
        return Response(status_code=HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(catalogue.body, media_type="application/json", headers=headers)
