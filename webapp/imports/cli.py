import click


@click.command("import-orders")
def import_orders_command() -> None:
    """Import an orders CSV."""


@click.command("import-products")
def import_products_command() -> None:
    """Import a products CSV."""
