from django.urls import path

from pricing import views

handler500 = "zooapp.errors.server_error"

urlpatterns = [
    path("quote/<str:sku>", views.quote),
    path("quotes/bulk", views.bulk),
    path("rates/fx", views.fx),
]
