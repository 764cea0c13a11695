# The Todo application of the AuthZEN interop: the backend asks about users and todos, the API
# gateway about routes. Admins may do anything, editors create todos and change their own,
# viewers read.
package todo

import rego.v1

default decision := false

users := data.todo_app.users

# The subject is a user by email (the backend), or an identity (the gateway).
email := input.subject.id if input.subject.type == "user"

email := address if {
	input.subject.type == "identity"
	some address, user in users
	user.identity == input.subject.id
}

role := users[email].role

editors := {"admin", "editor"}

decision if {
	input.action.name in {"can_read_user", "can_read_todos"}
	role
}

decision if {
	input.action.name == "can_create_todo"
	role in editors
}

decision if {
	input.action.name in {"can_update_todo", "can_delete_todo"}
	role == "admin"
}

decision if {
	input.action.name in {"can_update_todo", "can_delete_todo"}
	role == "editor"
	data.todo_app.owners[input.resource.id] == email
}

# The gateway's routes.
decision if {
	input.resource.type == "route"
	input.action.name == "GET"
	input.resource.id in {"/users/{userId}", "/todos"}
	role
}

decision if {
	input.resource.type == "route"
	input.action.name in {"POST", "PUT", "DELETE"}
	input.resource.id in {"/todos", "/todos/{todoId}"}
	role in editors
}
