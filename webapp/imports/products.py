"""Products CSV import (Shopify's products export and a generic CSV)."""

import click


@click.command("import-products")
def import_products_command() -> None:
    """Import a products CSV."""
