work_dir = './work_dirs/{{ fileBasenameNoExtension }}'
where = '{{ fileDirname }}'
name = '{{ fileBasename }}'
ext = {{ fileExtname }}
this = __file__
