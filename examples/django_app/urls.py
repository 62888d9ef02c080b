from django.urls import path

from .shop import task_views, views

urlpatterns = [
    path("orders/", views.create_order),
    path("orders/<int:pk>/", views.order_status),
    path("orders/<int:pk>/payment/", views.payment_webhook),
    path("orders/<int:pk>/receipt/", task_views.request_receipt),
    path("tasks/<str:task_id>/", task_views.receipt_status),
]
