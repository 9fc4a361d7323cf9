from curation.views import datasets, explorer, projects

# Each page module lists its own routes.
urlpatterns = [*projects.urlpatterns, *explorer.urlpatterns, *datasets.urlpatterns]
