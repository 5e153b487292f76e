"""Staff pages: server-rendered HTML for call-centre staff, with a browser login (see :mod:`serving.pages.views`)."""

from serving.pages.views import PREFIX, build_pages_router

__all__ = ["PREFIX", "build_pages_router"]
