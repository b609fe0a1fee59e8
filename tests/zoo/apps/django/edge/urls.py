from django.urls import path

from edge import views

handler500 = "zooapp.errors.server_error"

urlpatterns = [
    path("api/inventory/sync", views.inventory_sync),
    path("api/stock/<str:sku>", views.stock),
    path("api/<path:rest>", views.proxy),
]
