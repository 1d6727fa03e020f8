"""The web side of surveys: the owner's builder and results, the embed and the shopper's pages.

The domain (definitions, answers, triggers, traits) is the Flask-free top-level `surveys`
package; this package stores it and serves it.
"""
