"""``python -m predlog.bench SERVICE --request FILE``: the bench without the ``predlog`` CLI."""

from predlog.bench import command

if __name__ == "__main__":
    command()
