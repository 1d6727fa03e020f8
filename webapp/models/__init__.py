"""Every table, one module per area. Importing this package registers them all."""

from webapp.models.accounts import ApiToken, LoginFailure, User
from webapp.models.campaigns import Campaign, CampaignRecipient, EmailEvent, OutboxMessage
from webapp.models.catalog import Category, CategoryRule, Product
from webapp.models.customers import Customer, ErasedEmail
from webapp.models.jobs import JobRun, JobSetting, SchedulerHeartbeat
from webapp.models.orders import Order, OrderLine
from webapp.models.profiles import (
    CustomerCategoryStat,
    CustomerProfile,
    CustomerTrait,
    RefreshRun,
    RfmSegmentMap,
)
from webapp.models.segments import Segment, SegmentMember, SegmentRunStat
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
    "Campaign",
    "CampaignRecipient",
    "EmailEvent",
    "OutboxMessage",
    "DeclaredTrait",
    "ApiToken",
    "Category",
    "CategoryRule",
    "Customer",
    "CustomerCategoryStat",
    "CustomerProfile",
    "CustomerTrait",
    "ErasedEmail",
    "JobRun",
    "JobSetting",
    "LoginFailure",
    "Order",
    "OrderLine",
    "Product",
    "RefreshRun",
    "RfmSegmentMap",
    "SchedulerHeartbeat",
    "Segment",
    "SegmentMember",
    "SegmentRunStat",
    "ShopSettings",
    "Survey",
    "SurveyAnswer",
    "SurveyResponse",
    "Task",
    "User",
]
