from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from config.health import healthz

handler400 = "curation.common.views.bad_request"  # a body over the size limit: 413, not a bare 400
handler404 = "curation.common.apis.api_not_found"  # JSON under /api/, the page elsewhere

# Redoc writes its styles as <style> elements at run time and parses the schema in a worker made from a blob:
# this page alone allows both. Its template loads no web fonts from another site (templates/drf_spectacular/).
redoc = csp_update({"style-src": [UNSAFE_INLINE], "worker-src": ["blob:"]})(
    SpectacularRedocView.as_view(url_name="api-schema")
)

urlpatterns = [
    path("healthz", healthz, name="healthz"),  # answered by config.health.HealthCheckMiddleware before routing
    path("", include("curation.page_urls")),
    path("", include("training.page_urls")),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("curation.urls")),
    path("api/v1/", include("curation.urls_exports")),
    path("api/v1/", include("training.urls")),
    path("proxy/", include("curation.proxy.views")),  # the logging proxy: authenticated by X-Logtune-Key
    path("api/v1/schema", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script as a file (?script): the Content-Security-Policy refuses inline ones.
    path("api/v1/docs", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/redoc", redoc, name="api-redoc"),
]
