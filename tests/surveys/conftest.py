import pytest

from surveys.definition import SurveyDefinition, parse_definition
from tests.surveys.helpers import valid_definition


@pytest.fixture
def survey() -> SurveyDefinition:
    return parse_definition(valid_definition())
