from django.urls import path

from catalog import views

handler500 = "zooapp.errors.server_error"

urlpatterns = [
    path("products/<str:sku>", views.product),
    path("products/<str:sku>/reviews", views.reviews),
    path("products/<str:sku>/fx", views.fx),
    path("products/<str:sku>/dimensions", views.dimensions),
    path("quotes/bulk", views.bulk_quotes),
    path("quotes/<str:sku>", views.quote),
    path("cart/validate", views.validate_cart),
    path("reports/slow-movers", views.slow_movers),
    path("exports/<str:kind>", views.export),
    path("inventory/sync", views.inventory_sync),
    path("stock/<str:sku>", views.stock),
    path("bundles/<str:bundle_id>", views.bundle),
]
