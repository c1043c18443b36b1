"""Tests for securechat, run with C{trial tests}."""
