"""aegis.router.rest.conditional: entity tags and If-None-Match."""

from __future__ import annotations

from aegis.router.rest.conditional import entity_tag, matches, not_modified


def test_tags_are_strong_quoted_and_follow_their_parts() -> None:
    tag = entity_tag("r1:5", 3, "/api/v1/admin/instances", "limit=5")
    assert tag[0] == tag[-1] == '"'  # strong: no W/ before it
    assert tag == entity_tag("r1:5", 3, "/api/v1/admin/instances", "limit=5")
    assert tag != entity_tag("r1:6", 3, "/api/v1/admin/instances", "limit=5")
    assert tag != entity_tag("r1:5", 4, "/api/v1/admin/instances", "limit=5")
    assert tag != entity_tag("r1:5", 3, "/api/v1/admin/instances", "limit=6")


def test_if_none_match_matches_the_tag_in_a_list_weakly_or_star() -> None:
    tag = entity_tag("x")
    assert matches(tag, tag)
    assert matches(f'"other", W/{tag}', tag)
    assert matches("*", tag)
    assert not matches(None, tag)
    assert not matches("", tag)
    assert not matches('"other"', tag)
    assert not matches(tag.strip('"'), tag)  # unquoted: not the tag


def test_not_modified_has_no_body_and_the_headers() -> None:
    response = not_modified('"t"', "r1:9")
    assert response.status == 304
    assert not response.body
    assert response.headers["etag"] == '"t"'
    assert response.headers["x-aegis-version"] == "r1:9"
