"""Every page's route, each package listing its own next to its views."""

from curation.audit import views as audit_views
from curation.datasets import views as datasets_views
from curation.datasets.dedup import views as dedup_views
from curation.datasets.redaction import views as redaction_views
from curation.logs import views as logs_views
from curation.logs.bulk import views as bulk_views
from curation.logs.imports import views as imports_views
from curation.logs.scores import views as scores_views
from curation.logs.similar import views as similar_views
from curation.logs.topics import views as topics_views
from curation.projects import views as projects_views
from curation.tags import views as tags_views

urlpatterns = [
    *projects_views.urlpatterns,
    *imports_views.urlpatterns,
    *logs_views.urlpatterns,
    *scores_views.urlpatterns,
    *similar_views.urlpatterns,
    *topics_views.urlpatterns,
    *bulk_views.urlpatterns,
    *tags_views.urlpatterns,
    *audit_views.urlpatterns,
    *datasets_views.urlpatterns,
    *redaction_views.urlpatterns,
    *dedup_views.urlpatterns,
]
