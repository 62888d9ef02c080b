"""The admin CLI, `python -m saga COMMAND`: inspect and steer the instances of a schema.

`cli` parses the arguments and runs the commands, `queries` runs `sql/admin.sql`, and
`output` prints aligned tables or JSON. Nothing in the library imports this package.
"""
