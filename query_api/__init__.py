"""The read side's API: GraphQL (Strawberry) over the Postgres read models, per tenant."""
