"""GraphQL documents for the review stream, validated against GitHub's published schema in tests.

A review event stores its PR node without the reviews (``parsing.github_review_payload``), so the
PR's ``author`` is asked for here: it is what makes a review of one's own PR decidable from the raw
fact (``rules.github.self_review``). ``author`` is not a connection, so the query's cost is unchanged.
"""

ACTOR = "author { __typename login ... on User { databaseId } ... on Bot { databaseId } }"

REVIEW_FIELDS = """
  fullDatabaseId
  state
  submittedAt
  url
  %s
""" % ACTOR

PULLS_WITH_REVIEWS = """
query PullsWithReviews($owner: String!, $name: String!, $after: String) {
  repository(owner: $owner, name: $name) {
    pullRequests(first: 100, after: $after, orderBy: {field: UPDATED_AT, direction: DESC}) {
      pageInfo { hasNextPage endCursor }
      nodes {
        number
        url
        state
        updatedAt
        mergedAt
        %s
        reviews(first: 100) {
          totalCount
          pageInfo { hasNextPage endCursor }
          nodes { %s }
        }
      }
    }
  }
  rateLimit { cost remaining resetAt }
}
""" % (ACTOR, REVIEW_FIELDS)

REVIEWS_OF_PULL = """
query ReviewsOfPull($owner: String!, $name: String!, $number: Int!, $after: String) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      reviews(first: 100, after: $after) {
        pageInfo { hasNextPage endCursor }
        nodes { %s }
      }
    }
  }
  rateLimit { cost remaining resetAt }
}
""" % REVIEW_FIELDS

PROBE_PULLS = """
query ProbePulls($owner: String!, $name: String!) {
  repository(owner: $owner, name: $name) {
    pullRequests(first: 1, orderBy: {field: UPDATED_AT, direction: DESC}) { nodes { number updatedAt } }
  }
}
"""

# What a REST list item lacks, asked for the items of one listing page in one query (one alias per item):
# a merged PR's sizes and the issues GitHub links it to; an issue's closer (the actor of its last ClosedEvent:
# GitHub's list items carry no ``closed_by``). Numbers are integers from the page, never user text.
PULL_DETAILS = """
fragment PullDetails on PullRequest {
  number
  additions
  deletions
  closingIssuesReferences(first: 25) { nodes { number repository { nameWithOwner } } }
}
"""

ISSUE_DETAILS = """
fragment IssueDetails on Issue {
  number
  stateReason
  timelineItems(itemTypes: [CLOSED_EVENT], last: 1) {
    nodes { ... on ClosedEvent { createdAt actor { __typename login ... on User { databaseId } ... on Bot { databaseId } } } }
  }
}
"""


def details_query(stream: str, numbers: list[int]) -> str:
    """One query for the details of ``numbers`` (at most a page) of the ``pull_requests`` or ``issues`` stream;
    the answer has ``repository.n<NUMBER>`` per item (null for an item that is gone)."""
    field, fragment, spread = (("pullRequest", PULL_DETAILS, "PullDetails") if stream == "pull_requests"
                               else ("issue", ISSUE_DETAILS, "IssueDetails"))
    aliases = "\n".join(f"    n{int(n)}: {field}(number: {int(n)}) {{ ...{spread} }}" for n in numbers)
    return ("query Details($owner: String!, $name: String!) {\n  repository(owner: $owner, name: $name) {\n"
            f"{aliases}\n  }}\n  rateLimit {{ cost remaining resetAt }}\n}}\n{fragment}")


# -- organization-wide collection through search (``sources.github_org``) ----------------------------------

# A pull request as the search stores it: what the REST list form and its details query give, in one node
# (``parsing`` reads either form). ``repository`` names the repo, since a search spans many.
SEARCH_PULL = """
fragment SearchPull on PullRequest {
  number
  url
  title
  body
  state
  createdAt
  updatedAt
  mergedAt
  repository { nameWithOwner }
  %s
  additions
  deletions
  labels(first: 100) { nodes { name } }
  closingIssuesReferences(first: 25) { nodes { number repository { nameWithOwner } } }
  %%s
}
""" % ACTOR

SEARCH_REVIEWS = """reviews(first: 100) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes { %s }
  }""" % REVIEW_FIELDS

SEARCH_ISSUE = """
fragment SearchIssue on Issue {
  number
  url
  title
  state
  stateReason
  createdAt
  updatedAt
  closedAt
  repository { nameWithOwner }
  %s
  labels(first: 100) { nodes { name } }
  timelineItems(itemTypes: [CLOSED_EVENT], last: 1) {
    nodes { ... on ClosedEvent { createdAt actor { __typename login ... on User { databaseId } ... on Bot { databaseId } } } }
  }
}
""" % ACTOR


def search_page_query(kind: str, *, reviews: bool) -> str:
    """One page (100) of an issue search whose nodes are pull requests (``kind`` "pr", with their first 100
    reviews when ``reviews``) or issues ("issue"), with the search's ``issueCount``."""
    fragment = (SEARCH_PULL % (SEARCH_REVIEWS if reviews else "")) if kind == "pr" else SEARCH_ISSUE
    spread = "SearchPull on PullRequest" if kind == "pr" else "SearchIssue on Issue"
    name, on = spread.split(" on ")
    return ("query SearchPage($q: String!, $after: String) {\n"
            "  search(query: $q, type: ISSUE, first: 100, after: $after) {\n"
            "    issueCount\n    pageInfo { hasNextPage endCursor }\n"
            f"    nodes {{ ... on {on} {{ ...{name} }} }}\n  }}\n"
            "  rateLimit { cost remaining resetAt }\n}\n" + fragment)


def search_counts_query(count: int, *, newest: bool) -> str:
    """``count`` searches in one request (variables ``q0``..``qN``): each one's ``issueCount`` and, with
    ``newest``, its first node's ``updatedAt`` (the query sorts newest-updated first)."""
    names = ", ".join(f"$q{i}: String!" for i in range(count))
    node = " nodes { ... on PullRequest { updatedAt } ... on Issue { updatedAt } }" if newest else ""
    body = "\n".join(f"  s{i}: search(query: $q{i}, type: ISSUE, first: {1 if newest else 0}) {{ issueCount{node} }}"
                     for i in range(count))
    return f"query SearchCounts({names}) {{\n{body}\n  rateLimit {{ cost remaining resetAt }}\n}}\n"
