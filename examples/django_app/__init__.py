"""A minimal Django project that starts sagas from its views, transactionally.

    export SAGA_DSN=postgresql://app@localhost/app        # the web app's and the worker's
    python -m saga migrate                                 # the saga tables
    python -m examples.django_app.manage migrate           # the shop_order table
    python -m examples.django_app.manage runserver         # the web app
    python -m saga.worker examples.django_app.sagas:saga   # the worker, in another shell

    curl -d '{"customer": "ann", "item": "book"}' localhost:8000/orders/
    curl localhost:8000/orders/1/
    curl -d '{"status": "paid"}' localhost:8000/orders/1/payment/

`shop/tasks.py` has a background task on Django's tasks framework (`TASKS` in the
settings; `python -m examples.django_app.manage saga_worker` runs it).

`shop.views.create_order` writes an `Order` and starts its saga in one
`transaction.atomic()` block, on Django's own connection
(`saga.contrib.django.connection()`): both commit, or neither. `sagas.py` holds the
saga; it does not import Django, so the worker runs without `django.setup()`.
"""
