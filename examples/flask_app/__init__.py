"""A minimal Flask app that takes payments through a saga and a gateway's webhook.

    export SAGA_DSN=postgresql://app@localhost/app
    flask --app examples.flask_app.app init-db               # the saga tables
    flask --app examples.flask_app.app run                   # the web app
    python -m saga.worker examples.flask_app.sagas:saga      # the worker, in another shell

    curl --json '{"id": "p-1", "amount": 250}' localhost:5000/payments
    curl localhost:5000/payments/p-1
    curl --json '{"status": "CONFIRMED"}' localhost:5000/gateway/p-1

`app.create_app()` makes the app's one `Saga` (`sagas.make_saga`), whose pool the views
share; the worker imports the same definition from `sagas.saga`.
"""
