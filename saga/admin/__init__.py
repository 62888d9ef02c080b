"""The command line, `pgsaga COMMAND` (`python -m saga COMMAND`): inspect and steer the
instances of a schema, and hand `worker` over to `saga.worker`.

`cli` holds the table of commands and runs them, `arguments` the parser and argument
types both command lines share, `commands` and `steering` the commands (reading and
maintenance; changing instances through the `Saga` API), `queries` runs
`sql/admin.sql`, and `output` prints aligned tables, JSON and progress. The library
never imports this package; only the worker's command line uses `arguments`.
"""
