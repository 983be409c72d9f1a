variable myproject
set myproject "myproject"
