# The certification scenario's required policy behaviour (C.1.4): rules 1-4 read identifiers
# only, rules 5-8 the request's properties.
package authzen.fixture

import rego.v1

default decision := false

# Rules 1 and 3: the fixture's users read records. Other subjects are not recognised (an
# action search for an unknown subject finds nothing, C.4.6.1).
decision if {
	input.action.name == "read"
	input.resource.type == "record"
	input.subject.type == "user"
	input.subject.id in {"alice", "bob"}
}

# Rules 2 and 5: alice writes records that are not archived.
decision if {
	input.action.name == "write"
	input.resource.type == "record"
	input.subject.id == "alice"
	not archived
}

# Rule 6: an admin writes any record, archived or not.
decision if {
	input.action.name == "write"
	input.resource.type == "record"
	input.subject.properties.role == "admin"
}

# Rules 7 and 8: alice deletes softly, never hard.
decision if {
	input.action.name == "delete"
	input.resource.type == "record"
	input.subject.id == "alice"
	input.action.properties.soft == true
}

archived if input.resource.properties.status == "archived"
