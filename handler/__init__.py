"""The Lambda edge: events in, validated requests, render, storage, responses out.

On Lambda, the AWS SDK's configuration is pinned first, before any module of the handler
imports boto3, so that no file a script can write is ever read as SDK configuration
(`handler.settings.Settings.sdk_environment`)."""

from handler.settings import pin_sdk_configuration

pin_sdk_configuration()
