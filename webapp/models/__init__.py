"""Every table, one module per area. Importing this package registers them all."""

from webapp.models.accounts import ApiToken, LoginFailure, User
from webapp.models.catalog import Category, CategoryRule, Product
from webapp.models.customers import Customer, ErasedEmail
from webapp.models.orders import Order, OrderLine
from webapp.models.shop import ShopSettings
from webapp.models.surveys import (
    AnswerChoice,
    DeclaredTrait,
    Survey,
    SurveyAnswer,
    SurveyResponse,
)
from webapp.models.tasks import Task

__all__ = [
    "AnswerChoice",
    "DeclaredTrait",
    "ApiToken",
    "Category",
    "CategoryRule",
    "Customer",
    "ErasedEmail",
    "LoginFailure",
    "Order",
    "OrderLine",
    "Product",
    "ShopSettings",
    "Survey",
    "SurveyAnswer",
    "SurveyResponse",
    "Task",
    "User",
]
