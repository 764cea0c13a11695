# The search interop's rules. The request names users and records by id; their role,
# department and owner come from the data (data.json), as from a PIP.
package records

import rego.v1

default decision := false

user := data.search_demo.users[input.subject.id]

record := data.search_demo.records[input.resource.id]

owner if record.owner == input.subject.id

same_department if record.department == user.department

manager if user.role == "manager"

# A user views the records they own, those of their department; a manager views any.
decision if {
	input.action.name == "view"
	owner
}

decision if {
	input.action.name == "view"
	same_department
}

decision if {
	input.action.name == "view"
	record
	manager
}

# A user edits the records they own; a manager those of their department.
decision if {
	input.action.name == "edit"
	owner
}

decision if {
	input.action.name == "edit"
	manager
	same_department
}

# A user deletes the records they own.
decision if {
	input.action.name == "delete"
	owner
}
