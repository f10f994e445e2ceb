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
