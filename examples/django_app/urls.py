from django.urls import path

from .shop import views

urlpatterns = [
    path("orders/", views.create_order),
    path("orders/<int:pk>/", views.order_status),
    path("orders/<int:pk>/payment/", views.payment_webhook),
]
