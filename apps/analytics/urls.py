from django.urls import path

from apps.analytics import views

urlpatterns = [
    path("events/", views.ingest_events, name="analytics-events"),
    path("exports/", views.export_create, name="analytics-exports"),
    path("exports/<int:export_id>/", views.export_detail, name="analytics-export"),
    path("exports/<int:export_id>/download/", views.export_download,
         name="analytics-export-download"),
]
