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
