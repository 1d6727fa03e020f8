"""The survey domain, free of Flask and the database.

What a survey is (definition), what a shopper may answer (answers), when the embed shows it
(triggers), which traits an answer declares (traits), the stock templates, and the pure
arithmetic of results (nps, export). The web app stores a definition as the JSON-compatible
dict of `SurveyDefinition.to_dict()` and validates every edit with `validate_definition`.
"""
