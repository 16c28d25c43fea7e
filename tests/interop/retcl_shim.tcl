# A minimal Redis client standing in for retcl in distq's DisTcl interop tests.
#
# Written from the RESP (REdis Serialization Protocol, version 2)
# specification; it provides only what DisTcl uses of retcl: a connection
# object command called as
#
#     $redis -sync COMMAND ?ARG ...?
#
# which sends the command and returns its reply: simple and bulk strings as
# they are (UTF-8 decoded), a nil bulk string or nil array as the string
# "(nil)", integers as integers, arrays as Tcl lists (each element converted
# the same way). An error reply raises a Tcl error with the server's message.
#
#     set redis [retcl::connect 127.0.0.1 6379 $password]
#
# connects with `socket host port` and, when a password is given, sends AUTH
# before anything else (AUTH user password when a user is given too).

package provide retcl 0.1

namespace eval retcl {
    variable count 0

    # Open a connection; return its object command.
    proc connect {host port {password {}} {user {}}} {
        variable count
        set sock [socket $host $port]
        fconfigure $sock -translation binary -encoding binary -buffering full -blocking 1
        set redis ::retcl::connection[incr count]
        interp alias {} $redis {} ::retcl::Call $sock
        if {$password ne {}} {
            if {$user ne {}} {
                Call $sock -sync AUTH $user $password
            } else {
                Call $sock -sync AUTH $password
            }
        }
        return $redis
    }

    # $redis ?-sync? COMMAND ?ARG ...?: send one command, return its reply.
    # $redis close: close the connection and remove the object command.
    proc Call {sock args} {
        if {[lindex $args 0] eq "-sync"} {
            set args [lrange $args 1 end]
        }
        if {[llength $args] == 0} {
            error "wrong # args: should be \"\$redis ?-sync? command ?arg ...?\""
        }
        if {$args eq "close"} {
            close $sock
            foreach alias [interp aliases {}] {
                if {[interp alias {} $alias] eq [list ::retcl::Call $sock]} {
                    interp alias {} $alias {}
                }
            }
            return
        }
        # A command is an array of bulk strings; lengths count UTF-8 bytes.
        set request "*[llength $args]\r\n"
        foreach arg $args {
            set bytes [encoding convertto utf-8 $arg]
            append request "\$[string length $bytes]\r\n$bytes\r\n"
        }
        puts -nonewline $sock $request
        flush $sock
        return [Reply $sock]
    }

    # Read one reply (recursively for arrays).
    proc Reply {sock} {
        if {[gets $sock line] < 0} {
            error "Redis connection closed"
        }
        if {[string index $line end] eq "\r"} {
            set line [string range $line 0 end-1]
        }
        set type [string index $line 0]
        set rest [string range $line 1 end]
        switch -exact -- $type {
            + {
                return [encoding convertfrom utf-8 $rest]
            }
            - {
                error [encoding convertfrom utf-8 $rest]
            }
            : {
                return $rest
            }
            $ {
                if {$rest < 0} {
                    return (nil)
                }
                set data [read $sock [expr {$rest + 2}]]
                if {[string length $data] != $rest + 2} {
                    error "Redis connection closed in the middle of a reply"
                }
                return [encoding convertfrom utf-8 [string range $data 0 end-2]]
            }
            * {
                if {$rest < 0} {
                    return (nil)
                }
                set items {}
                for {set i 0} {$i < $rest} {incr i} {
                    lappend items [Reply $sock]
                }
                return $items
            }
            default {
                error "unexpected Redis reply: $line"
            }
        }
    }
}
